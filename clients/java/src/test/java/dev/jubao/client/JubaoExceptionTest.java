package dev.jubao.client;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.google.protobuf.Any;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.Map;
import org.junit.jupiter.api.Test;

class JubaoExceptionTest {
  @Test
  void readsTheReasonDomainAndMetadataOfTheErrorInfo() {
    ErrorInfo info =
        ErrorInfo.newBuilder()
            .setReason("INSUFFICIENT_FUNDS")
            .setDomain("jubao.dev")
            .putMetadata("account_id", "alice")
            .build();
    com.google.rpc.Status status =
        com.google.rpc.Status.newBuilder()
            .setCode(Status.Code.FAILED_PRECONDITION.value())
            .setMessage("alice cannot pay 100")
            .addDetails(Any.pack(info))
            .build();
    JubaoException error = JubaoException.of(StatusProto.toStatusRuntimeException(status));
    assertEquals(Status.Code.FAILED_PRECONDITION, error.code());
    assertEquals("INSUFFICIENT_FUNDS", error.reason());
    assertEquals("jubao.dev", error.domain());
    assertEquals(Map.of("account_id", "alice"), error.metadata());
    assertEquals("FAILED_PRECONDITION INSUFFICIENT_FUNDS: alice cannot pay 100", error.getMessage());
  }

  @Test
  void aStatusWithoutErrorInfoHasAnEmptyReason() {
    JubaoException error =
        JubaoException.of(new StatusRuntimeException(Status.UNAVAILABLE.withDescription("down")));
    assertEquals(Status.Code.UNAVAILABLE, error.code());
    assertEquals("", error.reason());
    assertEquals(Map.of(), error.metadata());
  }
}
