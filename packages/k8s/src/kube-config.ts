/**
 * Which Kubernetes API to talk to and as whom: a kubeconfig file (as kubectl reads it) or the
 * pod's service account. @kubernetes/client-node's KubeConfig does the reading and the
 * authentication (client certificates, bearer tokens, exec plugins, the service-account token
 * file it re-reads every minute, TLS settings); this module only chooses the source and turns
 * its failures into one clear error.
 */
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { delimiter, join } from 'node:path'
import { KubeConfig } from '@kubernetes/client-node'
import { K8sConfigError } from './errors.js'

export interface KubeConfigOptions {
  /** A kubeconfig file. Else KUBECONFIG, else ~/.kube/config, else the in-cluster service account. */
  readonly kubeconfig?: string | undefined
  /** Use the pod's service account even if a kubeconfig file exists. */
  readonly inCluster?: boolean | undefined
  /** A context of the kubeconfig other than its current one. */
  readonly context?: string | undefined
  /** Where the service-account files are mounted, as a prefix of their usual paths (tests). */
  readonly inClusterRoot?: string | undefined
}

export interface LoadedKubeConfig {
  readonly kubeConfig: KubeConfig
  /** `https://host:port` of the API server. */
  readonly server: string
  /** The context's namespace (in a pod: the service account's), or `default`. */
  readonly namespace: string
  /** What was read, for messages: a file path or `in-cluster`. */
  readonly source: string
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'

export function loadKubeConfig(options: KubeConfigOptions = {}): LoadedKubeConfig {
  const kc = new KubeConfig()
  const root = options.inClusterRoot ?? ''
  let source: string
  const envFiles = (process.env.KUBECONFIG ?? '').split(delimiter).filter((f) => f !== '')
  const homeFile = join(homedir(), '.kube', 'config')
  try {
    if (options.inCluster) {
      source = 'in-cluster'
      loadInCluster(kc, root)
    } else if (options.kubeconfig) {
      source = options.kubeconfig
      if (!existsSync(options.kubeconfig)) throw new K8sConfigError(source, 'file not found')
      kc.loadFromFile(options.kubeconfig)
    } else if (envFiles.length > 0) {
      source = `KUBECONFIG=${envFiles.join(delimiter)}`
      kc.loadFromDefault()
    } else if (existsSync(homeFile)) {
      source = homeFile
      kc.loadFromFile(homeFile)
    } else if (process.env.KUBERNETES_SERVICE_HOST) {
      source = 'in-cluster'
      loadInCluster(kc, root)
    } else {
      // KubeConfig.loadFromDefault would fall back to http://localhost:8080 here, silently.
      throw new K8sConfigError('default', `no kubeconfig (--kubeconfig, KUBECONFIG, ${homeFile}) and not running in a pod (KUBERNETES_SERVICE_HOST is not set)`)
    }
  } catch (err) {
    if (err instanceof K8sConfigError) throw err
    throw new K8sConfigError(options.kubeconfig ?? (options.inCluster ? 'in-cluster' : 'default'), (err as Error).message)
  }
  if (options.context) {
    if (!kc.getContextObject(options.context)) {
      throw new K8sConfigError(source, `no context "${options.context}" (contexts: ${kc.getContexts().map((c) => c.name).join(', ') || 'none'})`)
    }
    kc.setCurrentContext(options.context)
  }
  const context = kc.getContextObject(kc.getCurrentContext())
  if (!context) throw new K8sConfigError(source, kc.getCurrentContext() ? `current context "${kc.getCurrentContext()}" is not defined` : 'no current context')
  const cluster = kc.getCurrentCluster()
  if (!cluster) throw new K8sConfigError(source, `context "${context.name}" names cluster "${context.cluster}", which is not defined`)
  let server: URL
  try {
    server = new URL(cluster.server)
  } catch {
    throw new K8sConfigError(source, `cluster "${cluster.name}" has an invalid server URL "${cluster.server}"`)
  }
  if (server.protocol !== 'https:' && server.protocol !== 'http:') {
    throw new K8sConfigError(source, `cluster "${cluster.name}": server URL must be https:// (or http://), got "${cluster.server}"`)
  }
  if (server.protocol === 'http:' && !cluster.skipTLSVerify) {
    throw new K8sConfigError(source, `cluster "${cluster.name}": a plain http:// server needs insecure-skip-tls-verify: true`)
  }
  return { kubeConfig: kc, server: cluster.server.replace(/\/+$/, ''), namespace: context.namespace || 'default', source }
}

function loadInCluster(kc: KubeConfig, root: string): void {
  if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
    throw new K8sConfigError('in-cluster', 'KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: not running in a pod')
  }
  const token = `${root}${SERVICE_ACCOUNT_DIR}/token`
  if (!existsSync(token)) throw new K8sConfigError('in-cluster', `no service-account token at ${token} (is automountServiceAccountToken off?)`)
  kc.loadFromCluster(root)
}
