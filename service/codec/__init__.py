"""Wire codecs: the one dtype table, and request/response bodies <-> named numpy tensors."""
