package service

import "log/slog"

const slogInfo = slog.LevelInfo

func attrRPC(name string) slog.Attr { return slog.String("rpc", name) }

func attrStr(k, v string) slog.Attr { return slog.String(k, v) }

const slogWarn = slog.LevelWarn
