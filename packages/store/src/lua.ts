/**
 * Lua scripts: each runs atomically in Redis, which is what gives every write one revision and
 * concurrent writers a linear order.
 */

/**
 * Writes a batch of objects as one revision.
 *
 *   KEYS  [1] revision  [2] feed  [3..] object hashes
 *   ARGV  [1] expected revision or ''   [2] feed max length (approximate trim)
 *         then groups of 5: op (put|delete), index into KEYS, kind name, key, value
 *   reply {revision, result per object: created|configured|unchanged|deleted|notfound}
 *
 * Nothing changes and no revision is spent when every object is unchanged.
 */
export const APPLY_SCRIPT = `
local expected = ARGV[1]
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if expected ~= '' and tonumber(expected) ~= current then
  return redis.error_reply('REVISION_MISMATCH ' .. current)
end
local results = {}
local changes = {}
for i = 3, #ARGV, 5 do
  local op, k, kind, key, value = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local old = redis.call('HGET', KEYS[k], key)
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
      changes[#changes + 1] = {op, k, kind, key, value, oldCreated}
      results[#results + 1] = old and 'configured' or 'created'
    end
  elseif old then
    changes[#changes + 1] = {op, k, kind, key, '', oldCreated}
    results[#results + 1] = 'deleted'
  else
    results[#results + 1] = 'notfound'
  end
end
if #changes == 0 then
  return {current, results}
end
local rev = redis.call('INCR', KEYS[1])
for seq, c in ipairs(changes) do
  local created = c[6] or tostring(rev)
  if c[1] == 'put' then
    redis.call('HSET', KEYS[c[2]], c[4], rev .. '\\n' .. created .. '\\n' .. c[5])
  else
    redis.call('HDEL', KEYS[c[2]], c[4])
  end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], rev .. '-' .. (seq - 1),
    'kind', c[3], 'key', c[4], 'op', c[1], 'value', c[5], 'created', created)
end
return {rev, results}
`
