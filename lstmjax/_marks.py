"""Marks on config fields (``dataclasses.field(metadata=...)``), shared by :mod:`lstmjax.config`
and the data layer's :class:`~lstmjax.data.options.DataConfig`, which cannot import the config."""

RESUMABLE = {"resumable": True}
"""Field metadata of the settings a resumed run may change (lstmjax.rundir's resume rules): how
long to run, how often to report, where files are, and how the same model is computed (engine,
unroll, remat_chunk, num_devices); never what is trained."""
