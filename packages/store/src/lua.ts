/**
 * Lua scripts: each runs atomically in Redis, which is what gives every write one revision and
 * concurrent writers a linear order.
 */

/**
 * The one way objects change, shared by every script that writes objects (so that admission
 * checks and the write they guard are one atomic step):
 *
 *   flatnet_apply(revKey, feedKey, maxLen, expected, items) -> {revision, results}
 *     items: list of {op ('put'|'delete'), hashKey, kind, key, value[, objectRevision]}
 *     results: created|configured|unchanged|deleted|notfound per item
 *
 * `objectRevision` (optional, '' for none): the revision the item's object must still have
 * ('0': it must not exist); otherwise nothing is written and the reply is an error
 * "OBJECT_REVISION_MISMATCH <index> <actual>" (a compare-and-set on one object, which leaves
 * writers of other objects alone, unlike `expected`).
 *
 * Bumps the revision once for the whole batch (none when nothing changed), writes
 * "<rev>\n<created>\n<json>" into each hash, appends one feed entry per change with id <rev>-<seq>.
 */
export const APPLY_PRELUDE = `
local function flatnet_apply(revKey, feedKey, maxLen, expected, items)
  local current = tonumber(redis.call('GET', revKey) or '0')
  if expected ~= '' and tonumber(expected) ~= current then
    return redis.error_reply('REVISION_MISMATCH ' .. current)
  end
  for i, it in ipairs(items) do
    if it[6] ~= nil and it[6] ~= '' then
      local old = redis.call('HGET', it[2], it[4])
      local actual = 0
      if old then actual = tonumber(string.sub(old, 1, string.find(old, '\\n', 1, true) - 1)) end
      if actual ~= tonumber(it[6]) then
        return redis.error_reply('OBJECT_REVISION_MISMATCH ' .. (i - 1) .. ' ' .. actual)
      end
    end
  end
  local results = {}
  local changes = {}
  for _, it in ipairs(items) do
    local op, hashKey, kind, key, value = it[1], it[2], it[3], it[4], it[5]
    local old = redis.call('HGET', hashKey, key)
    local oldValue, oldCreated
    if old then
      local a = string.find(old, '\\n', 1, true)
      local b = string.find(old, '\\n', a + 1, true)
      oldCreated = string.sub(old, a + 1, b - 1)
      oldValue = string.sub(old, b + 1)
    end
    if op == 'put' then
      if oldValue == value then
        results[#results + 1] = 'unchanged'
      else
        changes[#changes + 1] = {op, hashKey, kind, key, value, oldCreated}
        results[#results + 1] = old and 'configured' or 'created'
      end
    elseif old then
      changes[#changes + 1] = {op, hashKey, kind, key, '', oldCreated}
      results[#results + 1] = 'deleted'
    else
      results[#results + 1] = 'notfound'
    end
  end
  if #changes == 0 then
    return {current, results}
  end
  local rev = redis.call('INCR', revKey)
  for seq, c in ipairs(changes) do
    local created = c[6] or tostring(rev)
    if c[1] == 'put' then
      redis.call('HSET', c[2], c[4], rev .. '\\n' .. created .. '\\n' .. c[5])
    else
      redis.call('HDEL', c[2], c[4])
    end
    redis.call('XADD', feedKey, 'MAXLEN', '~', maxLen, rev .. '-' .. (seq - 1),
      'kind', c[3], 'key', c[4], 'op', c[1], 'value', c[5], 'created', created)
  end
  return {rev, results}
end
`

/**
 * Writes a batch of objects as one revision.
 *
 *   KEYS  [1] revision  [2] feed  [3..] object hashes
 *   ARGV  [1] expected revision or ''   [2] feed max length (approximate trim)
 *         then groups of 6: op (put|delete), index into KEYS, kind name, key, value, the
 *         object's expected revision or ''
 */
export const APPLY_SCRIPT = `${APPLY_PRELUDE}
local items = {}
for i = 3, #ARGV, 6 do
  items[#items + 1] = {ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]}
end
return flatnet_apply(KEYS[1], KEYS[2], ARGV[2], ARGV[1], items)
`
