//go:build !linux

package main

import "errors"

type epollProxy struct{}

func serveEpoll(settings, int, chan<- *epollProxy) error {
	return errors.New("the epoll stack runs on Linux only; TOLLGATE_BASELINE=fasthttp runs anywhere")
}
