"""Looking at a stage's output: ``curate inspect`` (:mod:`.summary`, :mod:`.format`), ``curate sql``
(:mod:`.query`) and ``curate report`` (:mod:`.report`); the funnel across stages comes from the
manifests upstream (:mod:`.chain`)."""
