"""Array operations beside convolution, in vectorized NumPy: pooling and upsampling (exported from
``fastpoint``); :mod:`fastpoint.dask` runs them and the convolutions on dask arrays."""
