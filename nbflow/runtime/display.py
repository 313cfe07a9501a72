"""``display``, ``displayHTML``, ``udf``, ``sql`` and ``table`` as a Databricks notebook has them."""

from __future__ import annotations

import io
from typing import Any

from IPython.display import HTML, Image
from IPython.display import display as ipython_display

DISPLAY_ROWS = 1000
# display()'s keyword arguments that mean something to IPython; Databricks' own (streamName,
# trigger, checkpointLocation, chart settings...) are accepted and ignored (README).
IPYTHON_DISPLAY_KWARGS = {"include", "exclude", "metadata", "transient", "display_id", "raw", "clear"}


def display(*objs: Any, **kwargs: Any) -> None:
    """Databricks' ``display``: a table for a Spark or pandas DataFrame (first 1000 rows), a PNG
    for a matplotlib figure, rich output otherwise; ``display()`` shows nothing."""
    options = {k: v for k, v in kwargs.items() if k in IPYTHON_DISPLAY_KWARGS}
    for obj in objs:
        if _is_spark_dataframe(obj):
            _show_table(obj.limit(DISPLAY_ROWS + 1).toPandas(), options)
        elif _is_a(obj, "pandas.core.frame", "DataFrame"):
            _show_table(obj, options)
        elif _is_a(obj, "matplotlib.figure", "Figure"):
            png = io.BytesIO()
            obj.savefig(png, format="png", bbox_inches="tight")
            ipython_display(Image(data=png.getvalue(), format="png"), **options)
        else:
            ipython_display(obj, **options)


def _show_table(frame: Any, options: dict[str, Any]) -> None:
    import pandas as pd  # lazy: heavy, and only a DataFrame brings it (kernel start-up)

    with pd.option_context("display.max_rows", DISPLAY_ROWS, "display.min_rows", DISPLAY_ROWS):
        ipython_display(frame.head(DISPLAY_ROWS), **options)
    if len(frame) > DISPLAY_ROWS:
        print(f"(showing the first {DISPLAY_ROWS} rows)")


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
