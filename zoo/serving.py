"""Choosing each batch's compute ratio under load, so that requests meet a deadline."""

from zoo.latency_table import LatencyTable


class RatioController:
    """Picks the compute ratio of the next batch a server runs, from the
    requests waiting and a `LatencyTable` measured on the serving machine.

    A request's latency is its wait in the queue plus the batches ahead of
    it plus its own. The controller serves the next batch at the widest
    ratio at which its oldest request still finishes within `deadline_ms`
    and the requests behind it still could, were they served at the
    narrowest ratio, taking the 95th percentile of each batch's time; when
    no ratio can, the narrowest (the fastest) catches up. A server calls `choose` before each batch (a web
    handler's worker, a queue consumer).

    Args:
        table: a `zoo.LatencyTable` of the served model at `batch_size`.
        deadline_ms: the latency each request should meet.
        batch_size: the batch size the server runs.
        margin: fraction of the deadline kept in reserve for what the
            table does not see (Python, the queue itself).

    Example:
    >>> controller = zoo.serving.RatioController(table, deadline_ms=5.0)
    >>> ratio = controller.choose(waiting=len(queue), oldest_wait_ms=queue.oldest_age_ms())
    >>> logits = runners[signature_name(ratio)](images=batch)["logits"]
    """

    def __init__(self, table, deadline_ms, batch_size=1, margin=0.1):
        if not isinstance(table, LatencyTable):
            raise ValueError(f"`table` must be a zoo.LatencyTable; got {type(table).__name__}.")
        if not deadline_ms > 0:
            raise ValueError(f"`deadline_ms` must be > 0; got {deadline_ms!r}.")
        if not 0 <= margin < 1:
            raise ValueError(f"`margin` must be in [0, 1); got {margin!r}.")
        rows = [row for row in table.rows if row["batch_size"] == batch_size]
        if not rows:
            raise ValueError(f"The latency table has no measurements at batch size {batch_size}.")
        # Widest first: the first ratio that meets the deadline is the answer.
        self.p95_ms = {row["ratio"]: row["p95_ms"] for row in rows}
        self.median_ms = {row["ratio"]: row["median_ms"] for row in rows}
        self.ratios = sorted(self.p95_ms, reverse=True)
        self.deadline_ms = float(deadline_ms)
        self.batch_size = int(batch_size)
        self.margin = float(margin)

    def choose(self, waiting=1, oldest_wait_ms=0.0, arrivals_per_ms=0.0):
        """The ratio of the next batch, with `waiting` requests queued (this
        batch's included) of which the oldest has waited `oldest_wait_ms`,
        while requests arrive at `arrivals_per_ms` (recent rate; 0 if unknown)."""
        budget = self.deadline_ms * (1 - self.margin) - oldest_wait_ms
        batches = max(1, -(-int(waiting) // self.batch_size))
        fastest = self.p95_ms[self.ratios[-1]]
        # The share of time the fastest ratio leaves idle at this rate (its
        # typical, median time: what sets its capacity): the queue drains
        # only with that.
        spare = 1.0 - arrivals_per_ms * self.median_ms[self.ratios[-1]] / self.batch_size
        if spare <= 0:
            return self.ratios[-1]
        for ratio in self.ratios:
            # This batch at `ratio`; then the queue behind it, and what
            # arrives meanwhile, drained at the fastest ratio. Its last
            # request has waited no longer than the oldest, so the oldest's
            # budget bounds it.
            behind = (batches - 1) + arrivals_per_ms * self.p95_ms[ratio] / self.batch_size
            if self.p95_ms[ratio] + behind * fastest / spare <= budget:
                return ratio
        return self.ratios[-1]
