"""Evaluation against gold pairs (:mod:`.metrics`, :mod:`.baselines`) and the static HTML report (:mod:`.report`).

:mod:`.metrics` and :mod:`.baselines` import no datatrove; the command line (:mod:`.cli`) does.
"""
