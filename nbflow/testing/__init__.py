"""CI regression on executed notebooks: the pytest plugin (:mod:`.plugin`), the golden store
(:mod:`.golden`), ``nbflow diff`` (:mod:`.snapshot`, :mod:`.differences`, :mod:`.render`), the
sanitizers (:mod:`.sanitize`), JUnit XML for runs outside pytest (:mod:`.junit`), and the
DataFrame and table assertions tests use (:func:`assert_df_equal`, :func:`assert_table`)."""

from .assertions import assert_df_equal, assert_table

__all__ = ["assert_df_equal", "assert_table"]
