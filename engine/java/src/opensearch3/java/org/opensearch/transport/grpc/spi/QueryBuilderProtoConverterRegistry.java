package org.opensearch.transport.grpc.spi;

/** The other transport-grpc SPI type k-NN's gRPC query converter names; see {@link QueryBuilderProtoConverter}. */
public interface QueryBuilderProtoConverterRegistry {
}
