package service

import (
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// Admin implements AdminService. Every call needs an admin principal; until authentication
// is wired in, every call answers UNIMPLEMENTED.
type Admin struct {
	wardenv1.UnimplementedAdminServiceServer
	srv *Server
}

// NewAdmin returns the admin service sharing s's capabilities.
func NewAdmin(s *Server) *Admin { return &Admin{srv: s} }
