package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
require("common")
local query = os.getenv("BENCH_QUERY") or ""
request = function()
  return wrk.format("GET", "/kv/" .. key(next_index()) .. query)
end
