/** The validated options with defaults applied (`ResolvedSseModuleOptions`). */
export const SSE_MODULE_OPTIONS = Symbol('SSE_MODULE_OPTIONS');
