// Command runtime-shim; all logic is in internal/app so that only app.Main exits.
package main

import "github.com/nodesuite/nodesuite/runtime-shim/internal/app"

func main() { app.Main() }
