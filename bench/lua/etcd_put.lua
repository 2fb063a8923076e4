package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
require("common")
local value64 = base64(VALUE)
local headers = { ["Content-Type"] = "application/json" }
request = function()
  local body = '{"key":"' .. key64(next_index()) .. '","value":"' .. value64 .. '"}'
  return wrk.format("POST", "/v3/kv/put", headers, body)
end
