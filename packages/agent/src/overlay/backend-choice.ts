/**
 * Which WireGuard backend the agent runs: the kernel's where the module exists (configured
 * through the `wg` UAPI), flatnet's userspace data plane otherwise, unless the configuration
 * says which. Only the userspace backend has the relay fallback (a kernel device sends only UDP).
 */
import { detectKernelWireguard, KernelBackend, UserspaceBackend, type WireguardBackend } from '@flatnet/wireguard'
import type { WireguardBackendChoice } from '../config/types.js'

export interface BackendDecision {
  readonly kind: 'kernel' | 'userspace'
  /** Why, in words for the log and `flatnet status`. */
  readonly reason: string
}

/** The decision alone, with the probe injected (tests, and a dry run). */
export async function decideWireguardBackend(choice: WireguardBackendChoice, kernelAvailable: () => Promise<boolean>): Promise<BackendDecision> {
  if (choice === 'kernel') return { kind: 'kernel', reason: 'configured: wireguard.backend = kernel' }
  if (choice === 'userspace') return { kind: 'userspace', reason: 'configured: wireguard.backend = userspace' }
  return (await kernelAvailable())
    ? { kind: 'kernel', reason: 'auto: this kernel has the WireGuard module' }
    : { kind: 'userspace', reason: 'auto: this kernel has no WireGuard module' }
}

export interface ChosenBackend extends BackendDecision {
  readonly backend: WireguardBackend
}

export async function chooseWireguardBackend(choice: WireguardBackendChoice, options: { userspace?: ConstructorParameters<typeof UserspaceBackend>[0] } = {}): Promise<ChosenBackend> {
  const decision = await decideWireguardBackend(choice, () => detectKernelWireguard())
  // A kernel choice without the module still works through wireguard-go and the same `wg` UAPI.
  const backend = decision.kind === 'kernel' ? new KernelBackend({ device: 'auto' }) : new UserspaceBackend({ uapi: true, ...options.userspace })
  return { ...decision, backend }
}
