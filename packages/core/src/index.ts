export * from './errors.js'
export * from './ip.js'
export * from './labels.js'
export * from './endpoint.js'
