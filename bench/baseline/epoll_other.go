//go:build !linux

package main

import "errors"

func serveEpoll(settings, int) error {
	return errors.New("the epoll stack runs on Linux only; TOLLGATE_BASELINE=fasthttp runs anywhere")
}
