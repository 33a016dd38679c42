package dev.jubao.client;

import dev.jubao.meta.v1.GetCallerRequest;
import dev.jubao.meta.v1.GetCallerResponse;
import dev.jubao.meta.v1.MetaServiceGrpc;
import dev.jubao.payments.v1.Account;
import dev.jubao.payments.v1.AccountKind;
import dev.jubao.payments.v1.AccountPolicy;
import dev.jubao.payments.v1.CreateTransferRequest;
import dev.jubao.payments.v1.Entry;
import dev.jubao.payments.v1.GetAccountRequest;
import dev.jubao.payments.v1.GetTransferRequest;
import dev.jubao.payments.v1.Leg;
import dev.jubao.payments.v1.ListEntriesRequest;
import dev.jubao.payments.v1.ListEntriesResponse;
import dev.jubao.payments.v1.OpenAccountRequest;
import dev.jubao.payments.v1.PaymentServiceGrpc;
import dev.jubao.payments.v1.Transfer;
import dev.jubao.payments.v1.TransferState;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * A blocking jubao client: one channel, the bearer API key on every call, a deadline per call, request
 * ids for every mutation, and failures as {@link JubaoException} with the ErrorInfo reason. The generated
 * stubs ({@link #payments()}, {@link #meta()}) are the escape hatch for everything the typed methods do not
 * cover.
 */
public final class JubaoClient implements AutoCloseable {
  /** ListEntries page size used by {@link #entries}; the server allows up to 500. */
  public static final int ENTRIES_PAGE_SIZE = 500;
  /** Pages {@link #entries} reads at most (a bound on the loop). */
  public static final int ENTRIES_PAGES_MAX = 10_000;

  /** How often {@link #awaitDelivered} asks. */
  public static final long DELIVERY_POLL_MS = 50;

  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private final ManagedChannel channel;
  private final long timeoutMs;
  private final PaymentServiceGrpc.PaymentServiceBlockingStub payments;
  private final MetaServiceGrpc.MetaServiceBlockingStub meta;

  /** A client of the server at {@code endpoint} (host:port, plaintext), each call within {@code timeoutMs}. */
  public JubaoClient(String endpoint, String apiKey, long timeoutMs) {
    this(ManagedChannelBuilder.forTarget(endpoint).usePlaintext().build(), apiKey, timeoutMs);
  }

  /** A client on a channel of the caller's (TLS, mTLS, load balancing); it closes the channel. */
  public JubaoClient(ManagedChannel channel, String apiKey, long timeoutMs) {
    if (timeoutMs <= 0) {
      throw new IllegalArgumentException("timeoutMs must be positive");
    }
    this.channel = Objects.requireNonNull(channel);
    this.timeoutMs = timeoutMs;
    Metadata headers = new Metadata();
    headers.put(AUTHORIZATION, "Bearer " + Objects.requireNonNull(apiKey));
    var bearer = MetadataUtils.newAttachHeadersInterceptor(headers);
    this.payments = PaymentServiceGrpc.newBlockingStub(channel).withInterceptors(bearer);
    this.meta = MetaServiceGrpc.newBlockingStub(channel).withInterceptors(bearer);
  }

  /** A fresh request id (AIP-155): send the same one again to retry a mutation safely. */
  public static String newRequestId() {
    return UUID.randomUUID().toString();
  }

  /** The generated PaymentService stub, with the key and a fresh deadline. */
  public PaymentServiceGrpc.PaymentServiceBlockingStub payments() {
    return payments.withDeadlineAfter(timeoutMs, TimeUnit.MILLISECONDS);
  }

  /** The generated MetaService stub, with the key and a fresh deadline. */
  public MetaServiceGrpc.MetaServiceBlockingStub meta() {
    return meta.withDeadlineAfter(timeoutMs, TimeUnit.MILLISECONDS);
  }

  /** Who the key belongs to. */
  public GetCallerResponse whoAmI() {
    return call(() -> meta().getCaller(GetCallerRequest.getDefaultInstance()));
  }

  /** Open an account; {@code allowNegative} for a settlement account that funds others. */
  public Account openAccount(
      String requestId, String accountId, String currencyCode, AccountKind kind, boolean allowNegative) {
    Account account =
        Account.newBuilder()
            .setAccountId(accountId)
            .setCurrencyCode(currencyCode)
            .setKind(kind)
            .setPolicy(AccountPolicy.newBuilder().setAllowNegative(allowNegative))
            .build();
    OpenAccountRequest request =
        OpenAccountRequest.newBuilder().setRequestId(requestId).setAccount(account).build();
    return call(() -> payments().openAccount(request).getAccount());
  }

  /** Move {@code amountMinor} (minor units of {@code currencyCode}) from one account to another. */
  public Transfer transfer(
      String requestId, String currencyCode, String fromAccountId, String toAccountId, long amountMinor,
      String memo) {
    Leg leg =
        Leg.newBuilder()
            .setDebitAccountId(fromAccountId)
            .setCreditAccountId(toAccountId)
            .setAmountMinor(amountMinor)
            .build();
    CreateTransferRequest request =
        CreateTransferRequest.newBuilder()
            .setRequestId(requestId)
            .setCurrencyCode(currencyCode)
            .addLegs(leg)
            .setMemo(memo)
            .build();
    return call(() -> payments().createTransfer(request).getTransfer());
  }

  /**
   * The transfer once its credits have reached every payee (a payee in another shard of the ledger is
   * credited just after the payer is debited), polling GetTransfer for at most {@code waitMs}.
   */
  public Transfer awaitDelivered(String transferId, long waitMs) throws InterruptedException {
    GetTransferRequest request = GetTransferRequest.newBuilder().setTransferId(transferId).build();
    long deadlineNs = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(waitMs);
    long pollsMax = waitMs / DELIVERY_POLL_MS + 1;
    Transfer transfer = call(() -> payments().getTransfer(request).getTransfer());
    for (long poll = 0;
        poll < pollsMax
            && transfer.getState() == TransferState.TRANSFER_STATE_DEBITED
            && System.nanoTime() <= deadlineNs;
        poll++) {
      Thread.sleep(DELIVERY_POLL_MS);
      transfer = call(() -> payments().getTransfer(request).getTransfer());
    }
    return transfer;
  }

  /** The account with its current balances. */
  public Account account(String accountId) {
    GetAccountRequest request = GetAccountRequest.newBuilder().setAccountId(accountId).build();
    return call(() -> payments().getAccount(request).getAccount());
  }

  /** Every journal entry of the account, oldest first, page by page. */
  public List<Entry> entries(String accountId) {
    List<Entry> entries = new ArrayList<>();
    String token = "";
    for (int page = 0; page < ENTRIES_PAGES_MAX; page++) {
      ListEntriesRequest request =
          ListEntriesRequest.newBuilder()
              .setAccountId(accountId)
              .setPageSize(ENTRIES_PAGE_SIZE)
              .setPageToken(token)
              .build();
      ListEntriesResponse response = call(() -> payments().listEntries(request));
      entries.addAll(response.getEntriesList());
      token = response.getNextPageToken();
      if (token.isEmpty()) {
        return entries;
      }
    }
    throw new IllegalStateException("more than " + ENTRIES_PAGES_MAX + " pages of entries");
  }

  /** Run a call of a generated stub, turning its failure into a JubaoException. */
  public static <T> T call(Supplier<T> call) {
    try {
      return call.get();
    } catch (StatusRuntimeException error) {
      throw JubaoException.of(error);
    }
  }

  /** The channel, for stubs of other services. */
  public ManagedChannel channel() {
    return channel;
  }

  @Override
  public void close() throws InterruptedException {
    channel.shutdown();
    if (!channel.awaitTermination(timeoutMs, TimeUnit.MILLISECONDS)) {
      channel.shutdownNow();
    }
  }
}
