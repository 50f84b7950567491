"""The serving half of tlserve (HTTP and gRPC). It reads the model repository and never imports training/."""
