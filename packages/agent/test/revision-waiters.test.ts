/** RevisionWaiters: what waitApplied and waitEnforced (a CNI ADD) wait on. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RevisionWaiters } from '../src/revision-waiters.js'

describe('RevisionWaiters', () => {
  it('wakes each caller once its revision or a later one is reached, and only then', async () => {
    const w = new RevisionWaiters()
    const woken: number[] = []
    const at5 = w.wait(5, 5_000, () => new Error('late')).then(() => woken.push(5))
    const at7 = w.wait(7, 5_000, () => new Error('late')).then(() => woken.push(7))
    w.reach(4)
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(woken, [])
    w.reach(6)
    await at5
    assert.deepEqual(woken, [5])
    w.reach(9)
    await at7
    assert.deepEqual(woken, [5, 7])
    assert.equal(w.revision, 9)
  })

  it('answers at once for a revision already reached, and never goes back', async () => {
    const w = new RevisionWaiters()
    assert.equal(w.revision, -1)
    w.reach(3)
    w.reach(2)
    assert.equal(w.revision, 3)
    await w.wait(3, 1, () => new Error('must not time out'))
  })

  it('rejects with the caller\'s error after its time limit, and forgets the caller', async () => {
    const w = new RevisionWaiters()
    await assert.rejects(w.wait(1, 20, () => new Error('revision 1 not reached')), /revision 1 not reached/)
    w.reach(1)
    assert.equal(w.revision, 1)
  })
})
