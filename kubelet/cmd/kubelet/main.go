// Command kubelet; all logic is in internal/app so that only app.Main exits.
package main

import "github.com/nodesuite/nodesuite/kubelet/internal/app"

func main() { app.Main() }
