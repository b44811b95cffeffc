"""Reports: figures (matplotlib) and the demo page. The applications are in
:mod:`longshort.apps`."""
