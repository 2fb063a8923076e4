-- Shared by every bench script: a fixed key space and a 256-byte value.
KEYS = tonumber(os.getenv("BENCH_KEYS") or "10000")
VALUE = string.rep("v", tonumber(os.getenv("BENCH_VALUE_BYTES") or "256"))

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function base64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

function key(i) return string.format("bench/%08d", i) end

-- Sequential keys when BENCH_SEQUENTIAL is set (loading), random otherwise.
-- (Past the last key, loading rewrites the first ones while the last answers come in.)
local counter = 0
function next_index()
  if os.getenv("BENCH_SEQUENTIAL") then
    counter = counter + 1
    return (counter - 1) % KEYS
  end
  return math.random(0, KEYS - 1)
end

function setup(thread) math.randomseed(os.time()) end

-- base64 in Lua is slow: cache the encoded keys so the load generator is not the bottleneck.
local key64_cache = {}
function key64(i)
  local k = key64_cache[i]
  if k == nil then
    k = base64(key(i))
    if not os.getenv("BENCH_SEQUENTIAL") then key64_cache[i] = k end
  end
  return k
end

-- Loading: with BENCH_SEQUENTIAL, once every key was answered the thread stops and touches
-- BENCH_DONE_FILE; wrk's main thread sleeps out its duration, so the caller interrupts it then.
if os.getenv("BENCH_SEQUENTIAL") then
  local answered = 0
  function response(status, headers, body)
    answered = answered + 1
    if answered == KEYS then
      io.open(os.getenv("BENCH_DONE_FILE"), "w"):close()
      wrk.thread:stop()
    end
  end
end
