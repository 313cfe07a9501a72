"""``display``, ``displayHTML``, ``udf``, ``sql`` and ``table`` as a Databricks notebook has them."""

from __future__ import annotations

import html
import io
import json
from typing import Any

from IPython.display import HTML, Image
from IPython.display import display as ipython_display

from ..results import TABLE_MIME

DISPLAY_ROWS = 1000
# The JSON form of a displayed table, beside its HTML: {"schema": [{"name", "type"}], "rows":
# [[...], ...], "shown": N, "more": whether there were more rows than shown}.
# display()'s keyword arguments that mean something to IPython; Databricks' own (streamName,
# trigger, checkpointLocation, chart settings...) are accepted and ignored (README).
IPYTHON_DISPLAY_KWARGS = {"include", "exclude", "metadata", "transient", "display_id", "raw", "clear"}


def display(*objs: Any, **kwargs: Any) -> None:
    """Databricks' ``display``: a table for a Spark or pandas DataFrame (first 1000 rows), a PNG
    for a matplotlib figure, rich output otherwise; ``display()`` shows nothing."""
    options = {k: v for k, v in kwargs.items() if k in IPYTHON_DISPLAY_KWARGS}
    for obj in objs:
        if _is_spark_dataframe(obj):
            # The limit goes into the query: a billion-row table shows its first rows quickly.
            schema = [(f.name, f.dataType.simpleString()) for f in obj.schema.fields]
            # No index column: a Spark DataFrame has none (Databricks shows none).
            _show_table(obj.limit(DISPLAY_ROWS + 1).toPandas(), options, schema, index=False)
        elif _is_a(obj, "pandas.core.frame", "DataFrame"):
            _show_table(obj, options, [(str(name), str(kind)) for name, kind in obj.dtypes.items()])
        elif _is_a(obj, "matplotlib.figure", "Figure"):
            png = io.BytesIO()
            obj.savefig(png, format="png", bbox_inches="tight")
            ipython_display(Image(data=png.getvalue(), format="png"), **options)
        else:
            ipython_display(obj, **options)


def _show_table(frame: Any, options: dict[str, Any], schema: list[tuple[str, str]], index: bool = True) -> None:
    """A table as a front end shows it (HTML: the schema, the first rows, how many of how many),
    as text, and as ``TABLE_MIME`` JSON (schema and rows) that diffs and tests can read."""
    import pandas as pd  # lazy: heavy, and only a DataFrame brings it (kernel start-up)

    more = len(frame) > DISPLAY_ROWS
    shown = frame.head(DISPLAY_ROWS)
    count = f"showing {len(shown)} of {len(shown)}+ rows" if more else f"{len(shown)} rows"
    header = ", ".join(f"{name}: {kind}" for name, kind in schema)
    with pd.option_context("display.max_rows", DISPLAY_ROWS, "display.min_rows", DISPLAY_ROWS):
        bundle: dict[str, Any] = {
            "text/html": f'<div class="nbflow-table"><div><code>{html.escape(header)}</code></div>'
                         f"{shown.to_html(max_rows=DISPLAY_ROWS, index=index)}<div>{count}</div></div>",
            "text/plain": f"{shown.to_string(index=index, max_rows=DISPLAY_ROWS)}\n({count})",
        }
    try:
        rows = json.loads(shown.to_json(orient="values", date_format="iso", default_handler=str))
    except (ValueError, TypeError, OverflowError):
        rows = None  # a value JSON cannot hold: the table still shows, without its JSON form
    if rows is not None:
        bundle[TABLE_MIME] = {"schema": [{"name": name, "type": kind} for name, kind in schema],
                              "rows": rows, "shown": len(shown), "more": more}
    ipython_display(bundle, raw=True, **options)


def _is_a(obj: Any, module: str, name: str) -> bool:
    """Whether ``obj`` is an instance of ``module.name`` (or a subclass), without importing it."""
    return any(k.__name__ == name and k.__module__ == module for k in type(obj).__mro__)


def _is_spark_dataframe(obj: Any) -> bool:
    kind = type(obj)
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("pyspark.sql")


def displayHTML(html: str) -> None:
    """Databricks' ``displayHTML``: render an HTML string."""
    ipython_display(HTML(html))


def udf(*args: Any, **kwargs: Any) -> Any:
    """``udf`` in a Databricks notebook: pyspark's (imported on first use: pyspark is heavy)."""
    from pyspark.sql.functions import udf as pyspark_udf  # lazy: pyspark is heavy (kernel start-up)

    return pyspark_udf(*args, **kwargs)


def spark_call(spark: Any, method: str) -> Any:
    """``sql``/``table`` in a Databricks notebook: the session's method, without attaching the
    session before it is called."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(spark, method)(*args, **kwargs)

    call.__name__ = method
    call.__doc__ = f"spark.{method}(...) of the notebook's session."
    return call
