import assert from 'node:assert/strict'
import { it } from 'node:test'
import { promiseWithResolversPolyfilled } from '../src/index.js'

type WithResolvers = { withResolvers?: <T>() => { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } }

it('Promise.withResolvers exists once the mesh is imported, polyfilled only where Node lacks it (< 22)', async () => {
  const major = Number(process.versions.node.split('.')[0])
  assert.equal(promiseWithResolversPolyfilled, major < 22)
  const { promise, resolve } = (Promise as unknown as WithResolvers).withResolvers!<number>()
  resolve(42)
  assert.equal(await promise, 42)
})

it('the polyfill behaves like the built-in: settles once, rejects, keeps subclasses', async () => {
  const P = Promise as unknown as WithResolvers
  const saved = P.withResolvers
  delete P.withResolvers
  try {
    // A fresh instance of the module, evaluated against a runtime without the method.
    const fresh = (await import(new URL('../src/polyfills.js?fresh', import.meta.url).href)) as { promiseWithResolversPolyfilled: boolean }
    assert.equal(fresh.promiseWithResolversPolyfilled, true)
    const r = P.withResolvers!<string>()
    r.reject(new Error('no'))
    r.resolve('late')
    await assert.rejects(r.promise, /no/)
    class Sub<T> extends Promise<T> {}
    const sub = (P.withResolvers as unknown as (this: typeof Sub) => { promise: Promise<unknown> }).call(Sub)
    assert.ok(sub.promise instanceof Sub)
  } finally {
    Object.defineProperty(Promise, 'withResolvers', { value: saved, writable: true, configurable: true })
  }
})
