"""What the suite, the studies and the tests share: the pinned-process harness, the import graph."""
