import java.security.KeyStore;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;

public class Hello {
    public static void main(String[] args) throws Exception {
        // The default trust store: the image's /etc/ssl/certs/java/cacerts.
        TrustManagerFactory factory =
                TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        factory.init((KeyStore) null);
        int trusted = 0;
        for (TrustManager manager : factory.getTrustManagers()) {
            if (manager instanceof X509TrustManager x509) {
                trusted += x509.getAcceptedIssuers().length;
            }
        }
        System.out.println("hello from Java " + Runtime.version().feature() + ": "
                + trusted + " trusted CAs");
    }
}
