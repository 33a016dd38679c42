package dev.jubao.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.Map;

/**
 * A failed jubao call: its gRPC status code and the {@code google.rpc.ErrorInfo} every jubao error carries
 * (reason such as {@code INSUFFICIENT_FUNDS}, domain {@code jubao.dev}, metadata naming what is at fault).
 */
public final class JubaoException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final Status.Code code;
  private final String reason;
  private final String domain;
  private final Map<String, String> metadata;

  JubaoException(Status.Code code, String message, String reason, String domain, Map<String, String> metadata) {
    super(code + " " + reason + ": " + message);
    this.code = code;
    this.reason = reason;
    this.domain = domain;
    this.metadata = Map.copyOf(metadata);
  }

  /** The exception of a failed call, with the ErrorInfo of its status details when there is one. */
  public static JubaoException of(StatusRuntimeException error) {
    com.google.rpc.Status status = StatusProto.fromThrowable(error);
    Status.Code code = error.getStatus().getCode();
    String message = error.getStatus().getDescription() == null ? "" : error.getStatus().getDescription();
    if (status != null) {
      for (Any detail : status.getDetailsList()) {
        if (detail.is(ErrorInfo.class)) {
          ErrorInfo info = unpack(detail);
          return new JubaoException(code, message, info.getReason(), info.getDomain(), info.getMetadataMap());
        }
      }
    }
    return new JubaoException(code, message, "", "", Map.of());
  }

  private static ErrorInfo unpack(Any detail) {
    try {
      return detail.unpack(ErrorInfo.class);
    } catch (InvalidProtocolBufferException malformed) {
      throw new IllegalStateException("an ErrorInfo detail that does not parse", malformed);
    }
  }

  public Status.Code code() {
    return code;
  }

  /** The ErrorInfo reason, e.g. INSUFFICIENT_FUNDS; empty when the status had no ErrorInfo. */
  public String reason() {
    return reason;
  }

  public String domain() {
    return domain;
  }

  public Map<String, String> metadata() {
    return metadata;
  }
}
