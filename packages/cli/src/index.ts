export { run, buildProgram, VERSION } from './main.js'
export type { Out } from './output.js'
