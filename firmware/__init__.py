"""Board integrations, bitstream builds, flashing, bundle compiler (``plasticore.firmware``)."""
