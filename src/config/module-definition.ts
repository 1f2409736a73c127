import { ConfigurableModuleBuilder, Provider } from '@nestjs/common';
import type { SseModuleExtras, SseModuleOptions } from './sse-module-options';

export const {
  ConfigurableModuleClass: ConfigurableSseModule,
  MODULE_OPTIONS_TOKEN: SSE_RAW_OPTIONS,
  OPTIONS_TYPE: SSE_MODULE_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: SSE_MODULE_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<SseModuleOptions>({ moduleName: 'Sse' })
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createSseModuleOptions')
  .setExtras<Required<SseModuleExtras>>(
    { isGlobal: true, providers: [] },
    (definition, extras) => ({
      ...definition,
      global: extras.isGlobal,
      // Later providers win within a module, so the user's replace the defaults by token.
      providers: [...(definition.providers ?? []), ...(extras.providers as Provider[])],
    }),
  )
  .build();
