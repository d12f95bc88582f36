"""The composition root: the `beacon` commands, and the wiring of `beacon serve` and
`beacon worker` (the app, the dispatcher, the embedded worker threads, the outbox handlers).

Nothing below imports this package: it is the one place that knows every other."""
