package dev.jubao.client;

import dev.jubao.payments.v1.AccountKind;
import dev.jubao.payments.v1.Entry;
import dev.jubao.payments.v1.Transfer;
import java.util.List;

/**
 * A first payment from Java, end to end against a running server: open a settlement account and two
 * customers, fund one, retry that funding with the same request id (applied once), pay, try an
 * overdraft, and read balances and a statement. It prints one {@code key value} line per result, which
 * tests/client/test_java_client.py checks against the Python SDK.
 *
 * <pre>java -cp "$(cat target/classpath.txt):target/classes" dev.jubao.client.EndToEnd HOST:PORT API_KEY PREFIX</pre>
 */
public final class EndToEnd {
  private static final String CURRENCY = "CNY";
  private static final long TIMEOUT_MS = 10_000;

  private EndToEnd() {}

  public static void main(String[] args) throws InterruptedException {
    if (args.length != 3) {
      System.err.println("usage: EndToEnd HOST:PORT API_KEY PREFIX");
      System.exit(2);
    }
    String prefix = args[2];
    String bank = prefix + "-bank";
    String alice = prefix + "-alice";
    String bob = prefix + "-bob";
    try (JubaoClient client = new JubaoClient(args[0], args[1], TIMEOUT_MS)) {
      print("tenant", client.whoAmI().getTenantId());
      client.openAccount(JubaoClient.newRequestId(), bank, CURRENCY, AccountKind.ACCOUNT_KIND_SETTLEMENT, true);
      for (String customer : List.of(alice, bob)) {
        client.openAccount(JubaoClient.newRequestId(), customer, CURRENCY, AccountKind.ACCOUNT_KIND_CUSTOMER, false);
      }
      String funding = JubaoClient.newRequestId();
      Transfer funded = client.transfer(funding, CURRENCY, bank, alice, 10_000, "top-up");
      Transfer retried = client.transfer(funding, CURRENCY, bank, alice, 10_000, "top-up");
      print("funded", funded.getTransferId());
      print("retried", retried.getTransferId());
      Transfer paid = client.transfer(JubaoClient.newRequestId(), CURRENCY, alice, bob, 2_500, "lunch");
      print("paid", paid.getTransferId());
      for (Transfer transfer : List.of(funded, paid)) {
        print("state", client.awaitDelivered(transfer.getTransferId(), TIMEOUT_MS).getState().name());
      }
      try {
        client.transfer(JubaoClient.newRequestId(), CURRENCY, alice, bob, 1_000_000, "too much");
        print("overdraft", "ACCEPTED");
      } catch (JubaoException refused) {
        print("overdraft", refused.code() + " " + refused.reason());
      }
      for (String account : List.of(bank, alice, bob)) {
        print("balance " + account, Long.toString(client.account(account).getBalance().getLedgerMinor()));
      }
      for (Entry entry : client.entries(alice)) {
        print(
            "entry " + alice,
            entry.getEntrySeq() + " " + entry.getAmountMinor() + " " + entry.getBalanceAfterMinor());
      }
    }
  }

  private static void print(String key, String value) {
    System.out.println(key + " " + value);
  }
}
