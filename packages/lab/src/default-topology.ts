/**
 * The topology `flatnet lab up` builds without --topology. The same text is shipped as
 * examples/lab/default.yaml (a test keeps the two equal).
 */
export const DEFAULT_TOPOLOGY_FILE = '<default>'

export const DEFAULT_TOPOLOGY_YAML = `# The topology \`flatnet lab up\` builds when no --topology is given: three hosts of the three
# kinds flatnet joins, each an endpoint of its own in the namespace \`hosts\`, and a small shop
# spread over them. See docs/lab.md for the format.
apiVersion: flatnet.dev/v1alpha1
kind: LabTopology
underlay:
  cidr: 192.168.77.0/24     # one address per host, in host order: vm .1, baremetal .2, k8s-node .3
  mtu: 1500
namespaces:
  hosts: {labels: {tier: infra}}
  shop: {labels: {env: prod, team: web}}
  data: {labels: {env: prod, team: data}}
hosts:
- name: vm
  kind: vm
  namespace: hosts
  labels: {role: db-host}
  ports:
  - {name: ssh, port: 22}
- name: baremetal
  kind: baremetal
  namespace: hosts
  labels: {role: bastion}
  ports:
  - {name: ssh, port: 22}
- name: k8s-node
  kind: k8s-node
  namespace: hosts
  labels: {role: k8s-node}
workloads:
- namespace: shop
  name: frontend
  host: k8s-node
  labels: {app: frontend}
  ports:
  - {name: http, port: 8080}
- namespace: shop
  name: api
  host: k8s-node
  labels: {app: api}
  ports:
  - {name: http, port: 8080}
  - {name: metrics, port: 9090}
- namespace: data
  name: postgres
  host: vm
  labels: {app: postgres}
  ports:
  - {name: postgres, port: 5432}
- namespace: data
  name: cache
  host: baremetal
  labels: {app: cache}
  ports:
  - {name: redis, port: 6379}
  - {name: statsd, port: 8125, protocol: UDP}
`
