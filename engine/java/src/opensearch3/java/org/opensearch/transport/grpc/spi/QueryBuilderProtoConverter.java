package org.opensearch.transport.grpc.spi;

/**
 * Lets k-NN 3.x load without the transport-grpc module, which Maven Central does not serve.
 *
 * k-NN's createComponents always makes its gRPC query converter, a class implementing this
 * interface of transport-grpc's SPI; a distribution has the module, a class-path node does not.
 * Only the type has to exist for that class to load: without transport-grpc there is no gRPC
 * transport and no converter registry, so nothing ever calls the converter.
 */
public interface QueryBuilderProtoConverter {
}
