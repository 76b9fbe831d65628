package redisstore

// Script is the Lua source, for tests that look for it on a server.
func Script() string { return takeLua }
