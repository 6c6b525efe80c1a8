"""The evaluation report: numbers from saved raw outputs (``analysis``), a run's training curves
(``curves``), matplotlib figures and gallery pictures (``figures``), the page (``html``), the
folder (``build.build_report``)."""
