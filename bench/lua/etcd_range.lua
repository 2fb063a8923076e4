package.path = package.path .. ";" .. os.getenv("BENCH_LUA") .. "/?.lua"
require("common")
local serializable = os.getenv("BENCH_SERIALIZABLE") and ',"serializable":true' or ""
local headers = { ["Content-Type"] = "application/json" }
request = function()
  local body = '{"key":"' .. key64(next_index()) .. '"' .. serializable .. '}'
  return wrk.format("POST", "/v3/kv/range", headers, body)
end
