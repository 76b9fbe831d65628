package redisstore

// Script is the Lua source, for tests that look for it on a server.
func Script() string { return takeLua }

// KeySlot is the Cluster slot of a key, as the store computes it to pick a master.
func KeySlot(key string) int { return keySlot(key) }
