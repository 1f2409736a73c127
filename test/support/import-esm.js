/**
 * `import()` for ESM-only packages (Kysely 0.29, MikroORM 7) from the CommonJS that ts-jest emits:
 * TypeScript would turn a dynamic `import()` into `require()`, which cannot load them. Jest does
 * not transform .js files here, so the `import()` stays one (run with --experimental-vm-modules).
 */
module.exports = (specifier) => import(specifier);
