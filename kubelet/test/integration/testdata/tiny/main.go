// Command tiny is the only program in the integration test's images: the
// sandbox's pause process and every test container. Usage:
//
//	tiny pause                          wait for SIGTERM/SIGINT, exit 0
//	tiny run SECONDS CODE [MESSAGE]     print $GREETING, write MESSAGE to
//	                                    /dev/termination-log, sleep, exit CODE
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		os.Exit(2)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	switch os.Args[1] {
	case "pause":
		<-sig
	case "run":
		secs, _ := strconv.Atoi(os.Args[2])
		code, _ := strconv.Atoi(os.Args[3])
		fmt.Println("greeting:", os.Getenv("GREETING"))
		if len(os.Args) > 4 {
			_ = os.WriteFile("/dev/termination-log", []byte(os.Args[4]), 0o644)
		}
		select {
		case <-time.After(time.Duration(secs) * time.Second):
		case <-sig:
		}
		os.Exit(code)
	}
}
