"""pyvene's calling conventions (`IntervenableModel`, its argument forms, saving) on top of
:mod:`jaxvene.core`."""
