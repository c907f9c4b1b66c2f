export * from './overlay/relay-binding.js'
export * from './node-key.js'
