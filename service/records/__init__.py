"""Records of served requests (issues 17 and 19): one hook in the data plane hands each request's record to sinks
(the request log, CloudEvents, image capture), each behind a bounded queue drained in the background."""
