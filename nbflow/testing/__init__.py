"""CI regression on executed notebooks: the pytest plugin (:mod:`.plugin`), the golden store
(:mod:`.golden`), ``nbflow diff`` (:mod:`.snapshot`, :mod:`.differences`, :mod:`.render`), the
sanitizers (:mod:`.sanitize`), and JUnit XML for runs outside pytest (:mod:`.junit`)."""
