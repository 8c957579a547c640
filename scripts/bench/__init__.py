"""The load test behind ``make bench``.

- ``runner``: starts the relay under gunicorn, the stand-in model in load mode and the
  load generator; samples the relay's CPU and memory; prints the table.
- ``load``: the load generator, N simulated Twilio calls in one process.
- ``stats``: frame tags, percentiles, loss, verdicts and the table (pure).
- ``procfs``: what the runner reads about processes from /proc.
"""
