/**
 * Process-wide polyfills the mesh needs on Node 20.
 *
 * libp2p 3.x (and the yamux, ping and utils packages of that line) call `Promise.withResolvers`,
 * which V8 ships from Node 22 on. flatnet targets Node >= 20.19, so the mesh installs a
 * spec-compatible stand-in before any libp2p module runs. The entry point (index.ts) and
 * mesh-node.ts import this module first; ES module evaluation order then guarantees it runs
 * before libp2p's own modules. On Node 22+ the built-in is kept untouched.
 */

interface Resolvers<T> {
  promise: Promise<T>
  resolve: (value: T | PromiseLike<T>) => void
  reject: (reason?: unknown) => void
}

type PromiseWithResolvers = PromiseConstructor & { withResolvers?: <T>() => Resolvers<T> }

/** True when this module had to install `Promise.withResolvers` (the runtime lacked it). */
export const promiseWithResolversPolyfilled: boolean = installPromiseWithResolvers()

function installPromiseWithResolvers(): boolean {
  const P = Promise as PromiseWithResolvers
  if (typeof P.withResolvers === 'function') return false
  Object.defineProperty(Promise, 'withResolvers', {
    // `this` rather than Promise so subclasses get instances of themselves, as the spec says.
    value: function withResolvers<T>(this: PromiseConstructor): Resolvers<T> {
      let resolve!: Resolvers<T>['resolve']
      let reject!: Resolvers<T>['reject']
      const promise = new this<T>((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    },
    writable: true,
    configurable: true,
    enumerable: false,
  })
  return true
}
