"""Where video comes from, behind one interface (VideoSource): files, network streams, cameras and NDI."""
