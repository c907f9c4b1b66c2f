/**
 * What a TUN device (tun.ts) and a batched UDP socket (udp.ts) share: one handle of the addon,
 * read by its poll-driven reader into buffers the object owns, and one lifecycle — start and
 * stop reading, the error that stops a reader, ref/unref, stats, close.
 */
import { callNative, DataPlaneIoError, readerStoppedError, type DeviceStats, type NativeBinding, type NativeHandle } from './native.js'

export abstract class NativeDevice {
  protected readonly native: NativeBinding
  protected readonly handle: NativeHandle
  #closed = false
  #reading = false
  #errorHandler: ((err: DataPlaneIoError) => void) | undefined

  protected constructor(
    native: NativeBinding,
    handle: NativeHandle,
    /** `TUN device flatnet0`, `UDP socket 0.0.0.0:51820`: how messages name it. */
    private readonly label: string,
    private readonly kind: 'tun' | 'udp',
  ) {
    this.native = native
    this.handle = handle
  }

  get closed(): boolean {
    return this.#closed
  }

  /** The file descriptor (-1 once closed); owned by this object. */
  get fd(): number {
    return this.#closed ? -1 : this.native.fd(this.handle)
  }

  /**
   * Receives the error that stops a reader (e.g. the interface was deleted). Without a handler
   * the error is thrown from the event loop, as an EventEmitter's unhandled 'error' would be.
   */
  onError(handler: ((err: DataPlaneIoError) => void) | null): void {
    this.#errorHandler = handler ?? undefined
  }

  stats(): DeviceStats {
    this.assertOpen()
    return this.native.stats(this.handle)
  }

  /** Lets the process exit while the device is being read. */
  unref(): this {
    if (!this.#closed) this.native.setRef(this.handle, false)
    return this
  }

  ref(): this {
    if (!this.#closed) this.native.setRef(this.handle, true)
    return this
  }

  /** Stops reading and closes the descriptor (a TUN interface goes with its last descriptor). */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#reading = false
    this.native.close(this.handle)
  }

  protected assertOpen(): void {
    if (this.#closed) throw new DataPlaneIoError(`${this.label} is closed`, 'EBADF', 9, this.kind)
  }

  /**
   * Replaces the reader: stops the running one, then, unless `deliver` is null, starts one that
   * calls `deliver(n)` for each batch of n entries written into the given buffers.
   */
  protected read(
    deliver: ((n: number) => void) | null,
    syscall: string,
    buffers: { buffer: Buffer; lengths: Uint32Array; offsets: Uint32Array | null; addrs: Uint8Array | null; batchSize: number; slotSize: number },
  ): void {
    this.assertOpen()
    if (this.#reading) {
      this.native.stopRead(this.handle)
      this.#reading = false
    }
    if (!deliver) return
    const dispatch = (n: number): void => {
      if (n > 0) {
        deliver(n)
        return
      }
      this.#reading = false
      const err = readerStoppedError(this.label, -n, syscall)
      if (this.#errorHandler) this.#errorHandler(err)
      else throw err
    }
    const b = buffers
    callNative((n) => n.startRead(this.handle, dispatch, b.buffer, b.lengths, b.offsets, b.addrs, b.batchSize, b.slotSize))
    this.#reading = true
  }
}
