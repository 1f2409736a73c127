import {
  Body,
  Controller,
  Get,
  Header,
  HttpCode,
  NotFoundException,
  Param,
  Post,
  Res,
} from '@nestjs/common';
import { IsIn, IsInt, IsString, Matches, Max, MaxLength, Min, MinLength } from 'class-validator';
import { Idempotent, Sse } from '../../src';
import {
  ORDER_STATUSES,
  OrdersRepository,
  orderTopic,
  type OrderStatus,
} from './orders.repository';
import { PAGE } from './page';

export class PlaceOrderDto {
  @IsString() @MinLength(1) @MaxLength(100) item!: string;
  @IsInt() @Min(1) @Max(1000) quantity!: number;
}

export class SetStatusDto {
  @IsIn(ORDER_STATUSES) status!: OrderStatus;
}

class OrderIdParams {
  @Matches(/^[1-9]\d{0,17}$/, { message: 'id must be a positive integer' }) id!: string;
}

@Controller()
export class OrdersController {
  constructor(private readonly orders: OrdersRepository) {}

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  page(): string {
    return PAGE;
  }

  /**
   * Idempotent: a client that retries with the same `Idempotency-Key` (after a timeout, a
   * reconnect, a double click) gets the first order back and places it once.
   */
  @Post('orders')
  @Idempotent()
  @HttpCode(201)
  place(@Body() body: PlaceOrderDto) {
    return this.orders.place(body.item, body.quantity);
  }

  @Post('orders/:id/status')
  @Idempotent()
  @HttpCode(200)
  async setStatus(@Param() params: OrderIdParams, @Body() body: SetStatusDto) {
    const changed = await this.orders.setStatus(params.id, body.status);
    if (!changed) throw new NotFoundException(`order ${params.id} does not exist`);
    return changed;
  }

  /**
   * The latest orders, and in `Last-Event-ID` the position they were read at: the page opens its
   * stream from there (`?lastEventId=`), so orders placed meanwhile arrive once and none twice.
   */
  @Get('orders')
  async recent(
    @Res({ passthrough: true }) response: { header(name: string, value: string): void },
  ) {
    const { orders, lastEventId } = await this.orders.recentWithPosition();
    response.header('Last-Event-ID', lastEventId);
    return orders;
  }

  /** Every order event; resumable with Last-Event-ID. */
  @Sse('orders/stream', { topic: 'orders' })
  stream() {}

  /** One order's events. An unknown order is a 404, not an empty stream that never ends. */
  @Sse('orders/:id/stream', { topic: (request) => orderTopic(request.params.id) })
  async orderStream(@Param() params: OrderIdParams) {
    if (!(await this.orders.find(params.id))) {
      throw new NotFoundException(`order ${params.id} does not exist`);
    }
  }
}
