module github.com/nodesuite/nodesuite/e2e

go 1.26.0
